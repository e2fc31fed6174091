"""The batches' part of /api/v1/ (included by callcenter/urls.py): batches,
batches/{batch_id}, and its pause, resume, cancel, stats and report."""

from __future__ import annotations

from batches import views
from callcenter.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("batches", views.BatchViewSet, basename="batch")

urlpatterns = router.urls
