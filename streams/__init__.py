"""kbwatch: tells an organisation within seconds that a Windows update is breaking its devices."""

__version__ = "0.9.2"
