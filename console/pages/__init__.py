"""The staff console: its pages, forms and the dashboard's figures."""
