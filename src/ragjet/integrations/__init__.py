"""ragjet inside other frameworks (optional extras): each adapter talks to a ragjet server through ragjet.client."""
