"""Reference libraries as governed objects at central: their authorisation records, which desks may search
them, what each built version holds, and the signed authorisation manifest each desk receives."""
