"""HTTP/1.1 (RFC 9112): the connection, its message loop, two field tokenizers, the writer.

``messages.HTTP1Connection`` finds each head and frames each body for every tokenizer
(``h11_tokenizer``, ``httptools_tokenizer``); ``connection.HTTPConnection`` holds what the
connection does around it (timeouts, keep-alive, the cycle task, the WebSocket switch);
``writer.HTTP1Writer`` puts the responses on the wire; ``framing`` and ``wire`` are the bytes.
"""
