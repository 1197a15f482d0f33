"""The CLIBD Gradio app: identify insects by image and/or DNA barcode, batch runs, the embedding map,
training and library management. The app lives in clibd_core/ui/; this file only starts it.

    python app.py            # http://127.0.0.1:7860 (CLIBD_HOST / CLIBD_PORT to change); or: clibd serve
"""

from clibd_core.ui.server import main

if __name__ == "__main__":
    main()
