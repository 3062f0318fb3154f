"""The chat service every surface calls, and the web chat: the /ws/chat/ consumer and the chat page."""
