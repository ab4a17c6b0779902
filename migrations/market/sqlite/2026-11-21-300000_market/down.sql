DROP TABLE reports;
DROP TABLE registered_objects;
DROP TABLE registered;
DROP TABLE agents;
