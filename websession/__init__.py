"""Server-side web sessions, shared by the desk and central: the cookie carries only a random token.

``manager`` holds the lifetime rules (idle and absolute timeouts) over a store each product keeps in
its own database; ``interface`` is the Flask session interface that carries the token. Neither
product imports the other, so what both web interfaces need to keep sessions the same way lives here.
"""
