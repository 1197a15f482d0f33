"""The Gradio app: a thin layer over clibd_core, one module per tab (``*_tab.py``), the pictures in
``figures.py``, what tabs share in ``session.py``, the page and its launch in ``server.py``. Nothing
outside this package imports Gradio."""
