from django.urls import path

from press import views

urlpatterns = [
    path("press/<slug:slug>/", views.release, name="release"),
]
