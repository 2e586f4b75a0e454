"""The dashboard: server-rendered page shells (Jinja2) whose small scripts read the public JSON API
and the server-sent events, so anything a page shows a script can get too."""
