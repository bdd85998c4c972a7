"""Dashboard pages; each file is a Streamlit page script run by ``app/dashboard/main.py``."""
