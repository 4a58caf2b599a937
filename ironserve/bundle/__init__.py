"""The offline package bundle (a signed apt repository) and its HTTP server."""
