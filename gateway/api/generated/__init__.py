"""Generated from proto/ by `make proto` (proto/generate.py). Do not edit by hand."""
