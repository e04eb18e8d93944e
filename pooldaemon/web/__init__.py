"""The dashboard: a local web page over the control API (docs/interface.md §11).

`app.WebServer` serves it; `auth` holds login links and sessions; `security` the request guard
and headers; `stream` the event fan-out to open tabs; `static/` the page itself.
"""
