"""``google.colab.output``: the widget-manager switches are no-ops here (ipywidgets 7 renders natively in Colab)."""


def enable_custom_widget_manager():
    """Colab needs this for ipywidgets 8; with Colab's ipywidgets 7.7.1 nothing is to be done."""


def disable_custom_widget_manager():
    """See ``enable_custom_widget_manager``."""


def clear():
    """Clear the cell's output (a no-op in the check)."""
