"""The pure core: records, classification, scheduling, prompts, report texts, stream-json
parsing and shell quoting. Nothing here opens a connection, a file of state, or a terminal;
these modules take data and return data, and most of the tests live beside them.
"""
