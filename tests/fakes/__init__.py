"""Loopback fakes of the providers: real HTTP/SMTP servers on 127.0.0.1 that check
requests the way the provider does and can be scripted to fail."""
