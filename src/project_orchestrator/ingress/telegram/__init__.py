"""Telegram ingress: the webhook route, the development poller and the bot client.

Kept free of imports: python-telegram-bot is loaded only by the modules that use it.
"""
