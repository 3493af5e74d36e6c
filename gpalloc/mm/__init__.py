"""Models of files under mm/ of Linux v5.11 (plus the RFC's additions)."""
