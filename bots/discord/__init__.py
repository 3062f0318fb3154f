"""The Discord bot: answers mentions, DMs, replies and /ask through the chat service (discord.py).

Run it with `manage.py rundiscordbot`. Modules here import discord.py as `discord`; none of them may
be named discord.py, and all imports are absolute, so that name always means the library.
"""
