"""The "Backend" section every SynthLab panel shows: local or remote server, URL, token, Test connection."""

from __future__ import annotations

import ctk
import qt

from SynthLabCommonLib.backend import LOCAL, REMOTE, BackendChoice, describe_server, load_choice, save_choice


class BackendSection:
    """Adds a collapsed "Backend" section to ``layout``; changes are saved in Slicer's settings at once."""

    def __init__(self, layout):
        self.settings = qt.QSettings()
        section = ctk.ctkCollapsibleButton()
        section.text = "Backend"
        section.collapsed = True
        form = qt.QFormLayout(section)
        self.kind = qt.QComboBox()
        self.kind.addItem("Local (this computer)", LOCAL)
        self.kind.addItem("Remote SynthLab server", REMOTE)
        self.url = qt.QLineEdit()
        self.url.placeholderText = "http://gpu-server:8890"
        self.token = qt.QLineEdit()
        self.token.echoMode = qt.QLineEdit.Password
        self.token.placeholderText = "bearer token (required off loopback)"
        self.testButton = qt.QPushButton("Test connection")
        self.status = qt.QPlainTextEdit()
        self.status.readOnly = True
        self.status.maximumHeight = 110
        for label, widget in (("Run on:", self.kind), ("Server URL:", self.url), ("Token:", self.token),
                              ("", self.testButton), ("", self.status)):
            form.addRow(label, widget)
        layout.addWidget(section)
        self._show(load_choice(self.settings))
        self.kind.connect("currentIndexChanged(int)", self._save)
        self.url.connect("editingFinished()", self._save)
        self.token.connect("editingFinished()", self._save)
        self.testButton.connect("clicked(bool)", self._test)

    def choice(self) -> BackendChoice:
        return BackendChoice(self.kind.currentData, self.url.text.strip(), self.token.text.strip())

    def _show(self, choice: BackendChoice) -> None:
        self.kind.setCurrentIndex(max(0, self.kind.findData(choice.kind)))
        self.url.text, self.token.text = choice.url, choice.token
        self._enable()

    def _enable(self) -> None:
        remote = self.kind.currentData == REMOTE
        self.url.enabled = self.token.enabled = remote

    def _save(self, *args) -> None:
        self._enable()
        save_choice(self.settings, self.choice())

    def _test(self) -> None:
        self._save()
        try:
            self.status.plainText = describe_server(self.choice())
        except Exception as error:  # shown to the user, whatever went wrong
            self.status.plainText = f"Connection failed: {error}"
