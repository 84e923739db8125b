"""``flask --app web ...`` commands: issue an API token, migrate the database."""

from __future__ import annotations

import click
from flask import Flask, current_app

from web import db
from web.auth import issue_token
from web.services import services


def register_commands(app: Flask) -> None:
    @app.cli.group("token")
    def token_group() -> None:
        """JWT bearer tokens for the JSON API."""

    @token_group.command("create")
    @click.option("--subject", required=True, help="Who the token is for (the 'sub' claim).")
    @click.option("--ttl", type=click.IntRange(min=1), default=None, help="Lifetime in seconds.")
    def create_token(subject: str, ttl: int | None) -> None:
        """Print a token signed with JWT_SECRET."""
        settings = current_app.config["SETTINGS"]
        click.echo(issue_token(settings.jwt_secret, subject, ttl or settings.jwt_ttl_s))

    @app.cli.group("db")
    def db_group() -> None:
        """Database schema (Alembic migrations under web/migrations)."""

    @db_group.command("upgrade")
    @click.option("--revision", default="head")
    def upgrade(revision: str) -> None:
        """Apply migrations up to REVISION (default: head)."""
        db.upgrade(services().engine, revision)
        click.echo(f"database at {revision}")
