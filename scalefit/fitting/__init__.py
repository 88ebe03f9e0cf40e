"""The fitting engine shared by every law, and the Fit it returns."""
