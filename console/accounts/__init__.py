"""Who may go where: members (any active account) chat and open sources; staff also get the console and the admin."""
