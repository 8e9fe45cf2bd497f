"""The phone side: copy a Galaxy's photos over ADB into the gallery folder (`python -m device`)."""
