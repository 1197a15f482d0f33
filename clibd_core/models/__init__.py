"""The three towers and the CLIBD model that joins them."""
