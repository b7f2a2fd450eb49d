"""Sign-in: who is signed in, or a form (the local server, or a URL and a token)."""
from __future__ import annotations

import html
from typing import Any, Optional

import ipywidgets as W

from .section import Section
from .widgets import grid, labelled, row, show, shown


class SignInSection(Section):
    name = "sign_in"
    title = "Sign in"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.who = W.HTML()
        self.sign_out_button = W.Button(description="Sign out", icon="sign-out", layout=W.Layout(width="auto"))
        self.signed_in_box = row(self.who, self.sign_out_button)
        configured = panel.config.server_url()
        self.local_checkbox = W.Checkbox(value=not configured, description="Use the local server", indent=False)
        self.url_input = labelled(W.Text(value=configured or "", placeholder="https://deploy.example.com"),
                                  "Server URL")
        self.token_input = labelled(W.Password(placeholder="refresh token"), "Token")
        self.sign_in_button = W.Button(description="Sign in", button_style="primary", icon="sign-in")
        self.remote_box = grid(self.url_input, self.token_input)
        self.sign_in_form = W.VBox([row(self.local_checkbox, self.sign_in_button), self.remote_box])
        self.sign_in_button.on_click(self._on_sign_in)
        self.sign_out_button.on_click(lambda _: panel.submit(self._sign_out))
        self.local_checkbox.observe(lambda _: show(self.remote_box, not self.local_checkbox.value), names="value")
        show(self.remote_box, not self.local_checkbox.value)

    def form(self) -> list[W.Widget]:
        return [self.signed_in_box, self.sign_in_form]

    def buttons(self) -> list[W.Button]:
        return [self.sign_in_button, self.sign_out_button]

    @property
    def signed_in_shown(self) -> bool:
        return shown(self.signed_in_box)

    def on_session(self, session: Optional[Any]) -> None:
        show(self.signed_in_box, session is not None)
        show(self.sign_in_form, session is None)
        if session is None:
            self.who.value = ""
            return
        where = "the local server" if getattr(session, "local", False) else "server"
        self.who.value = (f"Signed in to {where} <code>{html.escape(str(session.url))}</code> "
                          f"as <b>{html.escape(str(session.user_name or session.user_id))}</b>")

    def _on_sign_in(self, _button: Any) -> None:
        use_local = self.local_checkbox.value
        url = self.url_input.value.strip()
        token = self.token_input.value
        self.token_input.value = ""  # the widget (and the notebook's widget state) never keeps it
        self.panel.submit(lambda: self._sign_in(use_local, url, token))

    def _sign_in(self, use_local: bool, url: str, token: str) -> None:
        from .. import session

        panel = self.panel
        if use_local:
            panel.say("Starting the local server and signing in\u2026", "work")
            session.sign_in(None, data_dir=panel.data_dir or panel.config.data_dir,
                            server_timeout=panel.config.server_timeout)
        else:
            self._sign_in_remote(url, token)
        panel.load(panel.session_changed(load=False))

    def _sign_in_remote(self, url: str, token: str) -> None:
        from .. import session
        from .frame import PanelError

        if not url:
            raise PanelError("Enter the server URL, or tick 'Use the local server'")

        def prompt(*_args: Any, **_kwargs: Any) -> str:
            # No token typed and none in $BLANKLY_REFRESH_TOKEN or the Blankly CLI's file:
            # a worker thread cannot show getpass, so say where to put it.
            raise PanelError("Paste your refresh token in the Token field, then Sign in")

        self.panel.say(f"Signing in to {url}\u2026", "work")
        try:
            # Handed over as an argument: an environment variable would reach every
            # process started meanwhile (the embedded server, a backtest's Python).
            session.sign_in(url, token=token.strip() or None, prompt=prompt)
        except Exception as exc:
            # A server that echoes the token back must not put it on screen.
            secret, line = token.strip(), " ".join(str(exc).split())
            raise PanelError(line.replace(secret, "***") if secret else line) from None

    def _sign_out(self) -> None:
        from .. import session

        session.sign_out()
        self.panel.session_changed(load=False)
