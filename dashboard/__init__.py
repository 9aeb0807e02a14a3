"""The dashboard: the cloud's web interface (Dash on Flask, served by waitress).

Modules:
    settings: `DashboardSettings` (listen address, database, sessions, login slowing, reverse proxy).
    app: `create_app`, the factory: the connection pool, the pages' callbacks, database-down banners.
    security: logins, sessions, CSRF tokens, `require_role` for state-changing callbacks.
    fleet: the fleet table's rows (state, risk order, RUL text) from the cloud's records.
    pages: page layouts and tables.
    figures: Plotly figures (units, colour-blind-safe palette, `uirevision`).
    serving: `DashboardServer`, waitress bound to an address, stoppable from any thread.
"""
