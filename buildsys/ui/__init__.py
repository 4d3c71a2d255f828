from buildsys.ui.console import Ui

__all__ = ["Ui"]
