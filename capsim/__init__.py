"""capsim: a discrete-event capacity-planning simulator for AI compute."""

__version__ = "0.1.0"
