"""What the desk and central share to reach the broker, outside both.

``transport.settings`` says where the broker is and with which certificate.
"""
