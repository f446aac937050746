"""The demo's Gradio page, launched by `app.py`.

* `page.compare`: the masked-dLLM page (strategies side by side on one prompt, streamed step by step);
* `page.gemma`: the DiffusionGemma page (acceptance rules side by side, every denoising step);
* `page.views`: pure functions from run records to HTML, Markdown and plotly figures.

The page loads nothing: `app.py` loads the model once and hands it over. It imports `unmasker`
and `training.tasks`; neither imports it.
"""
