"""Inference: load a base (+ adapter), generate replies with the training rendering.

    psyassist chat --model default --adapter demo-output/run/adapter
"""
