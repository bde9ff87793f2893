"""vle_kit's built-in plug-ins, registered through the same hooks as anyone else's."""
