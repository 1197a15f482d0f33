"""Reference libraries (store), identification (search) and its confidence calibration."""
