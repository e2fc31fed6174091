"""The batches' part of /api/v1/ (included by callcenter/urls.py): batches,
batches/{batch_id}, and its pause, resume, cancel, stats and report; the
operations (background sweeps) and their progress."""

from __future__ import annotations

from batches import views
from callcenter.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("batches", views.BatchViewSet, basename="batch")
# operations, operations/{operation_id}: background sweeps and their progress.
router.register("operations", views.OperationViewSet, basename="operation")

urlpatterns = router.urls
