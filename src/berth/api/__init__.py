"""The Engine API over HTTP/1.1 on httptools: connection, routing, versions, hijack, error mapping."""
