"""The Slack bot: answers mentions, thread follow-ups, DMs and /ask through the chat service.

HTTP events arrive at /slack/events (views.py); Socket Mode runs in `manage.py runslackbot`.
Both feed the same slack-bolt AsyncApp (app.py).
"""
