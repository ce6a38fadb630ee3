"""cloudherd: launch fleets of machines from one declarative spec, deploy over SSH, tear them down."""

__version__ = "0.1.0"
