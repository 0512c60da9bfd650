"""Dock widgets: thin Qt/magicgui views that wire user actions to core calls."""
