"""Modal dialogs: a form of fields, a typed confirmation, a secret shown once."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tui.qr import qr_text


@dataclass(frozen=True)
class Field:
    """One input of a form."""

    name: str
    label: str
    value: str = ""
    password: bool = False
    placeholder: str = ""


class FormScreen(ModalScreen[dict[str, str] | None]):
    """Fields one under the other; Enter on the last submits, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: list[Field], note: str = "") -> None:
        super().__init__()
        self.title_text, self.fields, self.note = title, fields, note

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            if self.note:
                yield Static(self.note, classes="note")
            for f in self.fields:
                yield Label(f.label)
                yield Input(
                    f.value, placeholder=f.placeholder, password=f.password, id=f"f-{f.name}"
                )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter moves to the next field; on the last one the form is done."""
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
            return
        self.dismiss({f.name: self.query_one(f"#f-{f.name}", Input).value for f in self.fields})

    def action_cancel(self) -> None:
        """Escape: nothing is done."""
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A dangerous action: the admin types `expected` to go ahead."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, what: str, expected: str) -> None:
        super().__init__()
        self.what, self.expected = what, expected

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog danger"):
            yield Label(self.what, classes="dialog-title")
            yield Static(f"Type [b]{self.expected}[/b] and press Enter to confirm; Escape cancels.")
            yield Input(id="confirm")
            yield Static("", id="mismatch")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Only the exact text confirms."""
        if event.value.strip() == self.expected:
            self.dismiss(True)
        else:
            self.query_one("#mismatch", Static).update("That is not it; nothing was done.")

    def action_cancel(self) -> None:
        """Escape: nothing is done."""
        self.dismiss(False)


class SecretScreen(ModalScreen[None]):
    """A secret shown once, with a QR code to carry it to a phone."""

    BINDINGS = [Binding("escape,enter", "close", "I stored it")]

    def __init__(self, title: str, secret: str, advice: str) -> None:
        super().__init__()
        self.title_text, self.secret, self.advice = title, secret, advice

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog secret"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.secret, id="secret", markup=False)
            yield Static(self.advice, classes="note")
            yield Static(qr_text(self.secret), id="qr", markup=False)

    def action_close(self) -> None:
        """The secret is gone from the screen for good."""
        self.dismiss(None)
