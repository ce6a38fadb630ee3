"""The REST service: `cloudherd serve`."""
