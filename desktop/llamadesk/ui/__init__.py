"""Every Qt widget, dialog and worker of LlamaDesk."""
