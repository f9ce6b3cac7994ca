"""The reporter's repositories: every SQL statement of the reporter's domain modules, one module
per aggregate (see reporter/README.md)."""
