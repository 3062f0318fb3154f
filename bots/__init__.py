"""Thin adapters from chat platforms (Slack, Discord) to the chat service in console.chat.

They translate platform events into `console.chat.areply` calls and its event stream back
into platform messages. No retrieval logic lives here.
"""
