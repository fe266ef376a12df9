"""The I/O-free core both clients share: requests built, bytes decoded, errors worded."""
