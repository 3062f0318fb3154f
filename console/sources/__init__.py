"""The source viewer: the page every citation links to, showing its document with the cited passage highlighted."""
