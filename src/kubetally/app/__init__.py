"""The use cases of kubetally: collect, run the agent, deliver, report, export, the demo.

Each use case is a plain function or class that takes typed settings (:mod:`kubetally.app.settings`
resolves them: flag > file > environment) and returns a result object. Nothing here prints:
``kubetally.cli`` parses options and renders the results, and the demo and the coming server
call the same functions. See ``docs/architecture.md`` for the layers.
"""
