from django.apps import AppConfig


class ApiSchemaConfig(AppConfig):
    name = "api_schema"
    verbose_name = "API schema"
