"""`interlock dashboard`: a live web page of Interlock, served from the operator's machine.

`view` renders the page from the core's status (pure: Jinja2 with HTML escaping, since label
values come from whoever deploys a service); `server` serves it and pushes each change to the
open pages by server-sent events. No front-end build step: the page is HTML from the server and
a dozen lines of script.
"""
