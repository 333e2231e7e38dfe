"""The Gradio app: annotation UI, named API endpoints and the pair queue."""
