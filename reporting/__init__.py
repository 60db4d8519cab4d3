"""Self-contained HTML reports (`html`) and checking them in a real headless Chromium (`browser`)."""
