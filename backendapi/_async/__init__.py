"""The async client and chat: the one source the blocking ones are generated from."""
