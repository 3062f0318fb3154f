"""Local stand-ins for the external services Lorebot talks to; real clients point at them in tests."""
